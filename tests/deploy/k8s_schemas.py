"""JSON schemas (draft 2020-12) for the fields of the Kubernetes objects that the deployment relies on.

Not the full Kubernetes OpenAPI: each schema requires what aimserve needs and types what it sets, so a
misspelt or misplaced field the tests depend on fails validation.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_LABELS: Schema = {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}}
_META: Schema = {
    "type": "object",
    "required": ["name", "labels"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": _LABELS,
    },
}
_PORT: Schema = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 65535}, {"type": "string"}]}
_HTTP_PROBE: Schema = {
    "type": "object",
    "required": ["httpGet"],
    "properties": {
        "httpGet": {
            "type": "object",
            "required": ["path", "port"],
            "properties": {"path": {"type": "string", "pattern": "^/"}, "port": _PORT},
        },
        "periodSeconds": {"type": "integer", "minimum": 1},
        "timeoutSeconds": {"type": "integer", "minimum": 1},
        "failureThreshold": {"type": "integer", "minimum": 1},
    },
}
_ENV: Schema = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name"],
        "oneOf": [{"required": ["value"]}, {"required": ["valueFrom"]}],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Z_][A-Z0-9_]*$"},
            "value": {"type": "string"},
            "valueFrom": {
                "type": "object",
                "required": ["secretKeyRef"],
                "properties": {
                    "secretKeyRef": {
                        "type": "object",
                        "required": ["name", "key"],
                        "properties": {"optional": {"type": "boolean"}},
                    }
                },
            },
        },
    },
}
_CONTAINER: Schema = {
    "type": "object",
    "required": ["name", "image", "ports", "readinessProbe", "livenessProbe", "lifecycle", "resources"],
    "properties": {
        "args": {"type": "array", "items": {"type": "string"}},
        "ports": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "containerPort"],
                "properties": {"containerPort": _PORT},
            },
        },
        "env": _ENV,
        "readinessProbe": _HTTP_PROBE,
        "livenessProbe": _HTTP_PROBE,
        "startupProbe": _HTTP_PROBE,
        "lifecycle": {
            "type": "object",
            "required": ["preStop"],
            "properties": {
                "preStop": {
                    "type": "object",
                    "required": ["exec"],
                    "properties": {
                        "exec": {"required": ["command"], "properties": {"command": {"type": "array"}}}
                    },
                }
            },
        },
        "resources": {
            "type": "object",
            "required": ["requests"],
            "properties": {"requests": {"type": "object", "required": ["cpu", "memory"]}},
        },
        "volumeMounts": {
            "type": "array",
            # A subPath mount never sees ConfigMap updates: the tiers would not reload.
            "items": {"type": "object", "required": ["name", "mountPath"], "not": {"required": ["subPath"]}},
        },
    },
}
DEPLOYMENT: Schema = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "apps/v1"},
        "kind": {"const": "Deployment"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["replicas", "selector", "template"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 2},
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "properties": {"matchLabels": _LABELS},
                },
                "template": {
                    "type": "object",
                    "required": ["metadata", "spec"],
                    "properties": {
                        "metadata": {
                            "type": "object",
                            "required": ["labels"],
                            "properties": {"labels": _LABELS},
                        },
                        "spec": {
                            "type": "object",
                            "required": [
                                "containers",
                                "volumes",
                                "terminationGracePeriodSeconds",
                                "securityContext",
                            ],
                            "properties": {
                                "terminationGracePeriodSeconds": {"type": "integer", "minimum": 1},
                                "securityContext": {
                                    "type": "object",
                                    "required": ["runAsNonRoot", "runAsUser"],
                                    "properties": {
                                        "runAsNonRoot": {"const": True},
                                        "runAsUser": {"type": "integer"},
                                    },
                                },
                                "containers": {"type": "array", "minItems": 1, "items": _CONTAINER},
                                "volumes": {
                                    "type": "array",
                                    "items": {"type": "object", "required": ["name"]},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
SERVICE: Schema = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "v1"},
        "kind": {"const": "Service"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["selector", "ports"],
            "properties": {
                "selector": _LABELS,
                "ports": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "required": ["name", "port", "targetPort"]},
                },
            },
        },
    },
}
CONFIG_MAP: Schema = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "data"],
    "properties": {
        "apiVersion": {"const": "v1"},
        "kind": {"const": "ConfigMap"},
        "metadata": _META,
        "data": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
SECRET: Schema = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "type", "stringData"],
    "properties": {
        "apiVersion": {"const": "v1"},
        "kind": {"const": "Secret"},
        "metadata": _META,
        "type": {"const": "Opaque"},
        "stringData": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_SELECTOR: Schema = {"type": "object", "required": ["matchLabels"], "properties": {"matchLabels": _LABELS}}
HPA: Schema = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "autoscaling/v2"},
        "kind": {"const": "HorizontalPodAutoscaler"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "minReplicas", "maxReplicas", "metrics"],
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["apiVersion", "kind", "name"]},
                "minReplicas": {"type": "integer", "minimum": 1},
                "maxReplicas": {"type": "integer", "minimum": 1},
                "metrics": {"type": "array", "minItems": 1},
            },
        },
    },
}
PDB: Schema = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "policy/v1"},
        "kind": {"const": "PodDisruptionBudget"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["selector"],
            "oneOf": [{"required": ["minAvailable"]}, {"required": ["maxUnavailable"]}],
            "properties": {"selector": _SELECTOR},
        },
    },
}
SERVICE_MONITOR: Schema = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": _SELECTOR,
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port", "path"],
                        "properties": {
                            "authorization": {
                                "type": "object",
                                "required": ["type", "credentials"],
                                "properties": {
                                    "type": {"const": "Bearer"},
                                    "credentials": {"type": "object", "required": ["name", "key"]},
                                },
                            }
                        },
                    },
                },
            },
        },
    },
}
BY_KIND: dict[str, Schema] = {
    "Deployment": DEPLOYMENT,
    "Service": SERVICE,
    "ConfigMap": CONFIG_MAP,
    "Secret": SECRET,
    "HorizontalPodAutoscaler": HPA,
    "PodDisruptionBudget": PDB,
    "ServiceMonitor": SERVICE_MONITOR,
}
