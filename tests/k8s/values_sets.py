"""The values sets every chart test runs over (offline render, real API server)."""

VALUES_SETS: dict[str, dict] = {
    "defaults": {},
    "cpu-only": {"asr.gpu.enabled": False, "tts.gpu.enabled": False, "asr.models": {"whisper-1": "base", "turbo": "base"}},
    "serverless-scale-to-zero": {"kserve.deploymentMode": "Serverless", "asr.minReplicas": 0, "tts.minReplicas": 0,
                                 "asr.maxReplicas": 3, "tts.maxReplicas": 3},
    "existing-secret-and-claims": {"hfToken.existingSecret": "my-hf-token", "asr.cache.existingClaim": "asr-models",
                                   "tts.cache.existingClaim": "tts-models", "gateway.apiKeys.existingSecret": "my-api-keys"},
    "ingress-tls": {"gateway.ingress.enabled": True, "gateway.ingress.className": "nginx",
                    "gateway.ingress.host": "speech.test.example", "gateway.ingress.tls.enabled": True,
                    "hfToken.value": "hf_test_token_value", "gateway.apiKeys.values": ["sk-test-key-1", "sk-test-key-2"]},
    "custom-voices": {"tts.voices": {"alloy": "/app/tts-cache/refs/alloy.wav", "narrator": "/app/tts-cache/refs/n.flac"},
                      "tts.unloadPolicy": "300", "asr.unloadPolicy": "never"},
    "ha-gateway": {"gateway.autoscaling.enabled": True, "gateway.autoscaling.maxReplicas": 4,
                   "gateway.podDisruptionBudget.enabled": True},
}

BAD_VALUES: dict[str, dict] = {
    "negative replicas": {"asr.minReplicas": -1},
    "unknown deployment mode": {"kserve.deploymentMode": "Knative"},
    "unknown unload policy": {"tts.unloadPolicy": "sometimes"},
    "port out of range": {"gateway.port": 70000},
    "unknown key": {"gateway.replicaz": 2},
    "scale to zero without Serverless": {"asr.minReplicas": 0},
}
