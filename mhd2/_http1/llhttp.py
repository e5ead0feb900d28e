"""placeholder"""
from .parser import H11Parser as LlhttpParser

__all__ = ["LlhttpParser"]
