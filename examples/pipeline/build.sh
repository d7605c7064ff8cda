#!/bin/sh
echo "built at $(date -u +%H:%M:%S)"
