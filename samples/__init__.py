"""Realistic sample mail for the demo, the tests and the benchmarks: the blank forms filled in code the ways schools
fill them (``forms``), saved as PDF (``pdf``), wrapped in the e-mails mail clients write (``mail``), and whole
applications for every programme (``applications``). Nothing here is used when the bot handles real mail."""
