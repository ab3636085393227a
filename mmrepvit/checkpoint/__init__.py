from .layouts import convert_official

__all__ = ['convert_official']
