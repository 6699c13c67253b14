"""The ``hubbot`` command line: argument parsing and one function per command (``main``), the readable summary
``check`` prints, and the demo workspace."""
