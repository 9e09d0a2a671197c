"""bench/synthesis_bench.py's trust step on a synthetic scenario: it runs, checks its results, prints ratios."""

import os

import pytest

from bench import synthesis_bench as bench
from tests.unit.engine.test_engine import Scenario


@pytest.fixture(scope='module')
def scenario(tmp_path_factory):
    return Scenario(str(tmp_path_factory.mktemp('scenario')))


def test_trust_costs_and_rows(scenario, tmp_path):
    prep = bench.Prepared(scenario.base, scenario.disk_raw, scenario.disk_raw, scenario.memory, 'app')
    trust = bench.trust_costs(prep, str(tmp_path), repeat=2)
    assert len(trust['applied']['signed'].cpu) == bench.APPLY_TRUST_RUNS
    assert 0 < trust['bytes']['encrypted'] - trust['bytes']['plain'] < 4096
    rows = bench.trust_rows(trust)
    assert [row[0].split(' ')[:2] for row in rows] == [['create', 'encrypted'], ['apply', 'encrypted'],
                                                      ['apply', '+']]
    assert all(float(row[1].split()[0]) > 0 for row in rows)
    assert sorted(os.listdir(tmp_path)) == ['scratch']
    assert '≤ 1.15' in bench.render(rows)


def test_the_bench_verifier_is_cursives_rsa_pss(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives import hashes
    from cursive import verifiers
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / 'f'
    path.write_bytes(os.urandom(100000))
    signature = bench.sign_file(key, str(path))
    ours = bench.RsaPssVerifier(key.public_key(), signature)
    theirs = verifiers.RSAVerifier(signature, hashes.SHA256(), key.public_key(), bench.RsaPssVerifier.PSS)
    for verifier in (ours, theirs):
        verifier.update(path.read_bytes())
        verifier.verify()
