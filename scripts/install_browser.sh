#!/usr/bin/env bash
# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
#
# Make sure headless Chromium is there for the report test (test/integration/test_report.py):
# Debian's / Ubuntu's `chromium` package through apt-get, as root or with password-less sudo.
# Does nothing when a chromium is already on PATH.
set -euo pipefail

say() {
    printf '[install_browser.sh] %s\n' "$*"
}

for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
        say "found $(command -v "$name")"
        exit 0
    fi
done

if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    say 'error: chromium is not installed and this user cannot run apt-get;' \
        'install the chromium package, or run pytest without FLOWCLAS_REQUIRE_BROWSER=1' >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say 'error: no apt-get here; install Chromium with your package manager' >&2
    exit 1
fi

start=$SECONDS
say 'installing chromium with apt-get'
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >/dev/null; then
    "${as_root[@]}" apt-get update -q >/dev/null
    "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >/dev/null
fi
say "done in $((SECONDS - start)) s: $(chromium --version 2>/dev/null || echo chromium)"
