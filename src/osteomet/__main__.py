"""``python -m osteomet``: the same command line as the ``osteomet`` script."""

from osteomet.cli.main import app

if __name__ == "__main__":
    app(prog_name="osteomet")
