from ..config import build_model, load_config, toolbox_of
from .convert import convert_checkpoint, convert_model_checkpoint
from .fuse import fuse_checkpoint_file
from .test import evaluate_path, prepare_test_cfg, test
from .train import build_runner, prepare_train_cfg, train

__all__ = ['build_model', 'build_runner', 'convert_checkpoint', 'convert_model_checkpoint',
           'evaluate_path', 'fuse_checkpoint_file',
           'load_config', 'prepare_test_cfg', 'prepare_train_cfg', 'test', 'toolbox_of',
           'train']
