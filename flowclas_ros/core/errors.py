# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Errors a user can act on; tools print them as one line instead of a traceback."""


class FlowclasError(Exception):
    """Base class for errors caused by user input (files, names, data), not by bugs."""


class ModelFileError(FlowclasError):
    """A weight or model file is missing, corrupt, or does not fit the architecture."""


class DataError(FlowclasError):
    """An image folder or mask is missing, empty, unreadable or inconsistent."""


class ConfigError(FlowclasError):
    """An unknown name or an invalid value in a configuration."""


class InputError(DataError):
    """One input frame cannot be used; ``reason`` is a short key for counting rejections."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f'{reason}: {message}')
        self.reason = reason
