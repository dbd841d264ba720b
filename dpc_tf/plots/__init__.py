"""Figures (matplotlib, the optional `plots` extra): cell diagrams and search plots."""
