"""Command-line interface (Typer). Heavy libraries are imported inside commands so that
``osteomet --help`` stays instant."""
