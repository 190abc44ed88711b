from __future__ import annotations

from lib.providers import check_health, local_provider
from lib.settings import load_settings


def test_local_provider_restarts_its_dead_engine(tmp_path):
    settings = load_settings({}, {"AVATAR_OPS_DATA_DIR": str(tmp_path)})
    provider = local_provider(settings)
    try:
        assert check_health(provider).ok
        url = provider.base_url
        provider.engine.process.kill()
        provider.engine.process.wait()
        health = check_health(provider)
        assert health.ok, health.message
        assert provider.engine.running and provider.engine.restarts == 1
        assert provider.base_url == url  # same port and key: clients and live pages carry on
        assert provider.client.list() == []
    finally:
        provider.close()
    assert not provider.engine.running
