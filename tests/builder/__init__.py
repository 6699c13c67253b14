"""Builders for test inputs: forms filled in code, PDFs made from them, and hostile files."""
