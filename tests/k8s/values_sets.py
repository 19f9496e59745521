"""The values sets every chart test runs over (offline render, real API server)."""

RWX = ["ReadWriteMany"]
VALUES_SETS: dict[str, dict] = {
    "defaults": {},
    "cpu-only": {
        "asr.gpu.enabled": False,
        "tts.gpu.enabled": False,
        "asr.models": {"whisper-1": "base", "turbo": "base"},
    },
    "serverless-scale-to-zero": {
        "kserve.deploymentMode": "Serverless",
        "asr.minReplicas": 0,
        "tts.minReplicas": 0,
        "asr.maxReplicas": 3,
        "tts.maxReplicas": 3,
        "asr.cache.accessModes": RWX,
        "tts.cache.accessModes": RWX,
    },
    "existing-secret-and-claims": {
        "hfToken.existingSecret": "my-hf-token",
        "asr.cache.existingClaim": "asr-models",
        "tts.cache.existingClaim": "tts-models",
        "gateway.apiKeys.existingSecret": "my-api-keys",
        "predictorAuth.existingSecret": "my-predictor-token",
    },
    "ingress-tls": {
        "gateway.ingress.enabled": True,
        "gateway.ingress.className": "nginx",
        "gateway.ingress.hosts": ["speech.test.example"],
        "gateway.ingress.tls": [{"secretName": "speech-tls", "hosts": ["speech.test.example"]}],
        "hfToken.value": "hf_test_token_value",
        "gateway.apiKeys.values": ["sk-test-key-1", "sk-test-key-2"],
    },
    "gateway-api": {
        "gateway.httpRoute.enabled": True,
        "gateway.httpRoute.hostnames": ["speech.test.example"],
        "gateway.httpRoute.gateway.create": True,
        "gateway.httpRoute.gateway.className": "traefik",
        "gateway.httpRoute.gateway.httpPort": 8000,
        "gateway.httpRoute.gateway.httpsPort": 8443,
    },
    "keda-autoscaling": {
        "asr.autoscaling.enabled": True,
        "asr.maxReplicas": 4,
        "asr.cache.accessModes": RWX,
        "tts.autoscaling.enabled": True,
        "tts.maxReplicas": 2,
        "tts.cache.existingClaim": "tts-shared",
    },
    "tenants": {
        "gateway.keyFile.existingSecret": "tenant-keys",
        "gateway.quotas.redis.deploy": True,
        "gateway.quotas.storeFailure": "closed",
        "networkPolicy.enabled": True,
    },
    "custom-voices": {
        "tts.voices": {"alloy": "/app/tts-cache/refs/alloy.wav", "narrator": "/app/tts-cache/refs/n.flac"},
        "tts.unloadPolicy": "300",
        "asr.unloadPolicy": "after_request",
    },
    "ha-gateway": {
        "gateway.autoscaling.enabled": True,
        "gateway.autoscaling.maxReplicas": 4,
        "gateway.podDisruptionBudget.enabled": True,
    },
    "monitoring": {
        "metrics.serviceMonitor.enabled": True,
        "metrics.serviceMonitor.labels": {"release": "prom"},
        "metrics.grafanaDashboard.enabled": True,
        "logFormat": "json",
        "predictorAuth.enabled": False,
    },
}

BAD_VALUES: dict[str, tuple[dict, str]] = {
    "negative replicas": ({"asr.minReplicas": -1}, "schema"),
    "unknown deployment mode": ({"kserve.deploymentMode": "Knative"}, "schema"),
    "unknown unload policy": ({"tts.unloadPolicy": "sometimes"}, "schema"),
    "port out of range": ({"gateway.port": 70000}, "schema"),
    "unknown key": ({"gateway.replicaz": 2}, "schema"),
    "scale to zero without Serverless": ({"asr.minReplicas": 0}, "Serverless"),
    "one ReadWriteOnce cache for several pods": ({"asr.maxReplicas": 2}, "ReadWriteMany"),
    "a PDB that blocks every drain": (
        {"gateway.podDisruptionBudget.enabled": True, "gateway.podDisruptionBudget.minAvailable": 1},
        "block every node drain",
    ),
    "unknown log format": ({"logFormat": "xml"}, "schema"),
    "an HTTPRoute attached to nothing": ({"gateway.httpRoute.enabled": True}, "parentRefs"),
    "KEDA on Knative": (
        {"kserve.deploymentMode": "Serverless", "asr.autoscaling.enabled": True},
        "needs kserve.deploymentMode=RawDeployment",
    ),
    "a Gateway API timeout that is no duration": ({"gateway.httpRoute.timeouts.request": "an hour"}, "schema"),
    "empty queue bound type": ({"asr.maxQueue": "eight"}, "schema"),
}
