"""cloudlet_nova.virt.state: the per-instance record and the leftovers of interrupted operations."""

import json
import os

import fixtures
import testtools

from cloudlet_nova.virt import state


class FakeBase:
    base_id = 'ab' * 32
    name = 'test-base'


class StateTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.instance_dir = os.path.join(self.root, 'uuid-1')

    def record(self):
        return state.new_record('uuid-1', FakeBase(), 'image-1', {'kind': 'glance', 'ref': 'overlay-1'})

    def test_round_trip(self):
        path = state.save(self.instance_dir, self.record())
        self.assertEqual(os.path.join(self.instance_dir, 'cloudlet.json'), path)
        loaded = state.load(self.instance_dir)
        self.assertEqual(self.record()['base_id'], loaded['base_id'])
        self.assertEqual({'kind': 'glance', 'ref': 'overlay-1'}, loaded['source'])
        self.assertEqual('image-1', loaded['base_image_id'])
        self.assertEqual(state.VERSION, loaded['version'])
        self.assertEqual(['cloudlet.json'], [n for n in os.listdir(self.instance_dir)
                                             if n.startswith('.') or n == 'cloudlet.json'])

    def test_missing_is_none(self):
        self.assertIsNone(state.load(self.instance_dir))

    def test_unreadable_records_are_ignored(self):
        os.makedirs(self.instance_dir)
        for content in (b'{not json', b'\xff\xfe', json.dumps({'version': 99, 'base_id': 'x'}).encode(),
                        json.dumps({'version': 1}).encode(), json.dumps([1]).encode(),
                        b' ' * (state.MAX_BYTES + 1)):
            with open(state.path(self.instance_dir), 'wb') as f:
                f.write(content)
            self.assertIsNone(state.load(self.instance_dir), content[:20])

    def test_remove(self):
        state.save(self.instance_dir, self.record())
        state.remove(self.instance_dir)
        state.remove(self.instance_dir)          # idempotent
        self.assertIsNone(state.load(self.instance_dir))

    def test_sweep(self):
        launch = state.launch_dir(self.instance_dir)
        os.makedirs(os.path.join(launch, 'x'))
        capture = os.path.join(self.root, 'uuid-2', state.CAPTURE_PREFIX + 'image-9')
        os.makedirs(capture)
        os.makedirs(os.path.join(self.root, '_base', state.LAUNCH_DIR))     # not an instance dir
        open(os.path.join(self.root, 'compute_nodes'), 'w').close()
        removed, captures = state.sweep(self.root)
        self.assertEqual([launch], removed)
        self.assertEqual([capture], captures)
        self.assertFalse(os.path.exists(launch))
        self.assertTrue(os.path.exists(capture))            # may hold a stopped VM's memory
        self.assertTrue(os.path.exists(os.path.join(self.root, '_base', state.LAUNCH_DIR)))

    def test_sweep_of_a_missing_dir(self):
        self.assertEqual(([], []), state.sweep(os.path.join(self.root, 'nothing')))
