"""vidstyle: paint videos and photos in the style of an artwork, stable over time."""

__version__ = "0.1.0"
