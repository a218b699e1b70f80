"""The HTML study report, built only from the files of a run directory (see osteomet.layout)."""
