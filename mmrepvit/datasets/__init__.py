from .checks import DatasetNotFoundError, check_dataset_paths

__all__ = ['DatasetNotFoundError', 'check_dataset_paths']
