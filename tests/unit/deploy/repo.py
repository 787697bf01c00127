"""The deployment paths and render_config loader, shared with integration and e2e tests."""

from tests.support.deploy_files import DEPLOY, REPO, load_render_config

__all__ = ["DEPLOY", "REPO", "load_render_config"]
