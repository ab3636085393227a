#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]   (CPU-only: gloo)
# dist_train.sh's launcher (same NNODES / NODE_RANK / PORT / MASTER_ADDR) running test.py
DIST_TOOL=test.py exec bash "$(dirname "$0")/dist_train.sh" "$1" "$3" "$2" "${@:4}"
