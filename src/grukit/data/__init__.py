"""Datasets: the user's CSV files and packaged real data, checked and put into arrays."""

from grukit.data.series import DataError, SeriesSet, from_arrays, read_csv

__all__ = ["DataError", "SeriesSet", "read_csv", "from_arrays"]
