from .checks import (DatasetAnnotationError, DatasetNotFoundError, check_dataset_annotations,
                     check_dataset_paths, explain_empty_dataset)
from .demo import CLASSES as DEMO_CLASSES
from .demo import SEG_CLASSES as DEMO_SEG_CLASSES
from .demo import make_demo_dataset
from .loading import UnreadableFileError, use_readable_loaders

__all__ = ['DatasetAnnotationError', 'DatasetNotFoundError', 'check_dataset_annotations',
           'check_dataset_paths', 'explain_empty_dataset', 'make_demo_dataset', 'DEMO_CLASSES',
           'DEMO_SEG_CLASSES', 'UnreadableFileError', 'use_readable_loaders']
