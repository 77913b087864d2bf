"""Dogtag: an offline dog-breed tagger for animal shelter photo folders."""

__version__ = "0.1.0"
