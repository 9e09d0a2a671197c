"""cloudlet_nova.virt.faults: engine errors become nova exceptions whose messages name the cause."""

import testtools

from nova import exception

from cloudlet_engine import errors
from cloudlet_glance import errors as glance_errors
from cloudlet_nova.virt import faults

LONG = '0123456789ab' + 'c' * 52


class DescribeTest(testtools.TestCase):

    def test_each_kind_is_named(self):
        for exc, start in (
                (errors.WrongBase('made for base x'), 'overlay does not fit the base: made for base x'),
                (errors.TruncatedOverlay('ends early'), 'overlay is truncated: ends early'),
                (errors.CorruptOverlay('bad checksum'), 'overlay is corrupt: bad checksum'),
                (errors.UnsupportedVersion('v9'), 'overlay format not supported: v9'),
                (errors.LimitExceeded('too big'), 'overlay exceeds a limit: too big'),
                (errors.SourceError('cannot reach h'), 'cannot fetch the overlay: cannot reach h'),
                (errors.SaveImageError('bad magic'), 'memory snapshot unusable: bad magic'),
                (errors.BaseVMError('no disk'), 'base VM unusable: no disk'),
                (errors.HypervisorError('no'), 'libvirt refused: no'),
                (glance_errors.ImageNotFound('image 1 not found'), 'image 1 not found')):
            self.assertEqual(start, faults.describe(exc))

    def test_credentials_are_removed(self):
        text = faults.describe(
            errors.SourceError('cannot reach https://bob:s3cret@h.example:8443/a.clo: refused'))
        self.assertNotIn('s3cret', text)
        self.assertNotIn('bob', text)
        self.assertIn('https://***@h.example:8443/a.clo:', text)

    def test_base_ids_are_shortened(self):
        text = faults.describe(errors.WrongBase('made for base %s, not for base %s' % (LONG, LONG)))
        self.assertEqual('overlay does not fit the base: made for base 0123456789ab, not for base '
                         '0123456789ab', text)


class TranslationTest(testtools.TestCase):

    def test_spawn_errors(self):
        with testtools.ExpectedException(faults.CloudletSpawnFailed,
                                         'cloudlet spawn failed: overlay is corrupt: x'):
            with faults.spawn_errors():
                raise errors.CorruptOverlay('x')

    def test_spawn_failures_abort_the_build(self):
        # nova's compute manager aborts (no reschedule) on ImageUnacceptable.
        self.assertTrue(issubclass(faults.CloudletSpawnFailed, exception.ImageUnacceptable))
        self.assertTrue(issubclass(faults.CloudletFlavorMismatch, faults.CloudletSpawnFailed))
        self.assertEqual('flavor m1 too small', faults.CloudletFlavorMismatch(
            reason='flavor m1 too small').format_message())

    def test_other_errors_pass(self):
        with testtools.ExpectedException(KeyError):
            with faults.spawn_errors():
                raise KeyError('x')

    def test_capture_errors(self):
        with testtools.ExpectedException(faults.CloudletCaptureFailed,
                                         'cloudlet capture failed: base VM unusable: y'):
            with faults.capture_errors():
                raise errors.BaseVMError('y')

    def test_refusal_message(self):
        self.assertEqual('cloudlet instances cannot be shelved: their state lives in memory; '
                         'create an overlay instead',
                         faults.CloudletOperationRefused('shelved').format_message())
        self.assertEqual(400, faults.CloudletOperationRefused('x').kwargs['code'])
