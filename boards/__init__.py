"""Board top-levels and toolchain glue (installed as ``specbp_rtl.boards``).

Empty until the board issue lands: no board is supported yet and the CLI
offers no ``build`` command.
"""
