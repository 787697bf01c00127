"""A Kubernetes API test server for batch/v1 Jobs whose pods are local processes.

DESIGN.md allows exactly one double: this. The real `kubernetes` client talks to it over
HTTP; it validates and defaults Job manifests, runs the job controller's logic, starts
each pod's first container as a local process group, and serves status, pods, logs and
watches. See `KubeApiTestServer` for the test-side API.

Modules: `server` (thread and lifecycle), `routes` (HTTP), `cluster` (objects, controller
loop, deletion), `kubelet` (pods as processes), `controller` (pure job decisions),
`admission`/`validation`/`defaults`/`schema` (manifest handling), `pods` (pod objects and
container environment), `processes` (process groups), `store` (objects and watch log),
`selectors`, `patching`, `status`, `discovery`, `meta`.
"""

from .kubelet import PodProcessInfo
from .routes import RecordedRequest
from .server import DEFAULT_IMAGE_ENV_KEYS, KubeApiTestServer

__all__ = ["DEFAULT_IMAGE_ENV_KEYS", "KubeApiTestServer", "PodProcessInfo", "RecordedRequest"]
