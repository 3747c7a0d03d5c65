"""Sphinx configuration of the specbp API reference (``docs/api``), built from the docstrings.

Build it with ``sphinx-build -W -b html docs docs/_build/html`` (``tests/test_docs.py`` does, with ``-W``:
every warning is an error). It needs only Sphinx and the installed package: the builtin ``alabaster``
theme, no network (no intersphinx inventories), nothing imported here beyond :mod:`specbp_rtl`.
"""

from __future__ import annotations

import specbp_rtl

project = "specbp"
author = "the specbp authors"
copyright = "the specbp authors"
release = specbp_rtl.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
# The Markdown pages under docs/ (boards.md, ...) are written for GitHub, not for Sphinx (no MyST here), and
# docs/results holds a sweep's CSV and PNG outputs: neither is part of the reference.
exclude_patterns = ["_build", "**.md", "results", "Thumbs.db", ".DS_Store"]

# -- autodoc ---------------------------------------------------------------------------------------------------
# Every page documents the modules that *define* the names (each directive says :members:); the packages
# (specbp_rtl.gateware, .sim, .boards, ...) only re-export them, so their pages show the package docstring alone.
autodoc_member_order = "bysource"
autodoc_default_options = {
    "member-order": "bysource",
    "show-inheritance": True,
}
# Signatures carry the annotations; the descriptions stay readable.
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autoclass_content = "class"
# Default values as the source writes them (``baud=DEFAULT_BAUD``), not as their repr.
autodoc_preserve_defaults = True

# -- napoleon: the docstrings are numpy style mixed with plain reStructuredText -------------------------------
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_param = True
napoleon_use_rtype = True
napoleon_use_ivar = True
# The gateware's own numpy sections: "Ports" lists a component's members like parameters; "Latency",
# "Throughput" and "Model" are prose (without these, napoleon folds them into the section above).
napoleon_custom_sections = [
    ("Ports", "params_style"),
    ("Trainer", "params_style"),
    ("Board link", "params_style"),
    "Latency",
    "Throughput",
    "Model",
]

# -- HTML --------------------------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"specbp {release} API reference"
html_static_path: list[str] = []


# -- signatures ------------------------------------------------------------------------------------------------
def _constructor_signature(app, what, name, obj, options, signature, return_annotation):
    """Show the constructors' own parameters where autodoc finds only a pass-through.

    * Amaranth's ``Elaboratable`` defines ``__new__(cls, *args, src_loc_at=0, **kwargs)`` (it tracks unused
      elaboratables), and autodoc prefers a user-defined ``__new__`` to ``__init__``: every component would read
      ``MacArray(*args, src_loc_at=0, **kwargs)``. Use the class's ``__init__`` instead.
    * ``typing.Protocol`` classes (interfaces, never instantiated) get ``(*args, **kwargs)``: show none.
    * Amaranth's ``lib.enum`` classes get their metaclass's ``(value, *args, **kwargs)``: show ``(value)``, as
      autodoc does for the standard library's enums.
    """
    if what not in {"class", "exception"} or not isinstance(obj, type):
        return None
    import enum

    from amaranth.hdl import Elaboratable  # imported when autodoc runs (the documented modules import it anyway)

    if issubclass(obj, enum.Enum):
        return "(value)", return_annotation

    if issubclass(obj, Elaboratable) and obj.__new__ is Elaboratable.__new__ and obj.__init__ is not object.__init__:
        from sphinx.util.inspect import signature as inspect_signature
        from sphinx.util.inspect import stringify_signature

        sig = inspect_signature(obj.__init__, bound_method=True, type_aliases=app.config.autodoc_type_aliases)
        return stringify_signature(sig, show_return_annotation=False), return_annotation
    if getattr(obj, "_is_protocol", False) and signature == "(*args, **kwargs)":
        return "", return_annotation
    return None


# -- docstrings -------------------------------------------------------------------------------------------------
def _no_inline_attribute_type(app, what, name, obj, options, lines):
    """Keep napoleon from reading a property's or attribute's first line as ``type: description``.

    Napoleon takes the text before the first colon of such a docstring as its type: "Words of all layers: the
    depth of the weight memory" would render as "the depth of the weight memory. Type: Words of all layers", and
    "Beats (cycles) per weight word: ..." would cross-reference ``cycles`` as a type. This project writes
    "summary: detail" there and leaves the types to the annotations, so an empty comment (``..``, which renders
    as nothing) goes first: napoleon takes it for the inline part and leaves the docstring as written.
    Runs before napoleon's own handler (priority 500).
    """
    if what in {"attribute", "data", "property"} and any(line.strip() for line in lines):
        lines[:0] = ["..", ""]


def setup(app):
    app.connect("autodoc-process-signature", _constructor_signature)
    app.connect("autodoc-process-docstring", _no_inline_attribute_type, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
