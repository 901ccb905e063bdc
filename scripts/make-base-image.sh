#!/bin/sh
# Make the test image's base, localcode-base:trixie, with debootstrap + docker import,
# for machines where Docker Hub cannot be reached (needs root and the debootstrap
# package). `localcode setup` does this by itself when needed; this script only calls
# the same code (localcode.harness.image.make_base_image) and prints the tag.
set -eu
exec python3 -c 'from localcode.harness.image import make_base_image; print(make_base_image())'
