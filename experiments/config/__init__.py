"""Experiment configs: parsing and validating TOML into immutable dataclasses.

`loader` is the entry point (`load_config`, `parse_config`), `schema` holds the
frozen config dataclasses, `checks` the field validators and `toml_writer`
writes a config back as TOML.
"""
