"""The test builders now live in the ``samples`` package (the demo uses them too); these names keep older test
imports (``tests.builder.forms`` ...) working."""
import sys

from samples import applications, forms, mail, pdf

for _name, _module in {"applications": applications, "forms": forms, "mail": mail, "pdf": pdf}.items():
    sys.modules[f"{__name__}.{_name}"] = _module
