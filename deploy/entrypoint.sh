#!/bin/sh
# Entrypoint of the NRM Hub image. Its arguments are an `nrm` command line, with or without
# the leading `nrm`:  run identifier | bootstrap | status | dlq list | ...
# Settings come from NRM_* variables; `nrm` validates them at start and exits 2 naming the
# bad one. The process is exec'd so it receives SIGTERM directly and drains before exiting.
set -eu
if [ "${1:-}" = "nrm" ]; then
    shift
fi
if [ "$#" -eq 0 ]; then
    echo "nrm-entrypoint: give a command, e.g. 'run identifier' or 'bootstrap'" >&2
    exit 64
fi
exec nrm "$@"
