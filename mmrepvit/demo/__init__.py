"""The demo (``make demo``, ``tools/demo.py``): built-in data (``data``), the run that trains,
tests and fuses a detector and a segmentor on it (``run``), and pictures of the results
(``pictures``). Its configs are ``configs/demo/``; docs/demo.md describes it."""
from .data import CLASSES, SEG_CLASSES, demo_dataset_is_current, make_demo_dataset
from .pictures import draw_val_grid
from .run import DEMO_CONFIGS, run_demo

__all__ = ['CLASSES', 'SEG_CLASSES', 'DEMO_CONFIGS', 'demo_dataset_is_current',
           'draw_val_grid', 'make_demo_dataset', 'run_demo']
