from .checks import (
                     DatasetAnnotationError,
                     DatasetNotFoundError,
                     check_dataset_annotations,
                     check_dataset_paths,
                     explain_empty_dataset,
)
from .loading import (
    LabelMapError,
    UnreadableFileError,
    check_dataset_files,
    cut_short_jpeg,
    use_readable_loaders,
)

__all__ = ['DatasetAnnotationError', 'DatasetNotFoundError', 'check_dataset_annotations',
           'check_dataset_paths', 'explain_empty_dataset',
           'LabelMapError', 'UnreadableFileError', 'check_dataset_files', 'cut_short_jpeg',
           'use_readable_loaders']
