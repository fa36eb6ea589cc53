"""emotrack test suite (a package so fixtures modules import as tests.fixtures_*)."""
