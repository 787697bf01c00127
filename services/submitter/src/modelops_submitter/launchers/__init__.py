"""Launchers start and stop a job's runners: local processes or one Kubernetes Indexed Job."""

from .base import Launcher, LaunchRequest, runner_env

__all__ = ["LaunchRequest", "Launcher", "runner_env"]
