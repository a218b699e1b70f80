"""The CT fixtures (tests/ct/fixtures.py) for every CT test folder."""

from tests.ct.fixtures import easy_lesions, one_torch_thread, real_ct_manifest  # noqa: F401
