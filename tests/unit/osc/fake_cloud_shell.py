"""Runs python-openstackclient's real `openstack` shell against a fake cloud made of requests-mock answers.

test_plugin.py runs this in a subprocess whose sys.path has a temporary
.dist-info declaring setup.cfg's entry points, so OSC finds the plugin the way
it would once the package is installed. Arguments:

    <answers.json> <requests-seen.json> <openstack arguments...>

answers.json: [{"method", "url", "status", "json", "headers"}]; every request
the shell made is written to requests-seen.json (method, url, headers, json).
"""

import json
import sys

from openstackclient import shell
import requests_mock


def main(answers_path, seen_path, *argv):
    with open(answers_path) as f:
        answers = json.load(f)
    with requests_mock.Mocker() as mock:
        for answer in answers:
            mock.register_uri(answer['method'], answer['url'], status_code=answer.get('status', 200),
                              json=answer.get('json'), headers=answer.get('headers', {}))
        try:
            return shell.main(list(argv))
        finally:
            with open(seen_path, 'w') as f:
                json.dump([{'method': r.method, 'url': r.url, 'headers': dict(r.headers),
                            'json': r.json() if r.body else None} for r in mock.request_history], f)


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
