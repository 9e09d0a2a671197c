"""Flavor choice: exact RAM and vCPUs of the base, a root disk that holds it, the smallest."""

from osc_lib import exceptions
import pytest

from cloudlet_glance import properties as props
from cloudlet_osc import flavors
from tests.unit.osc.conftest import flavor

DISK_IMAGE = {'id': 'img-1', 'name': 'demo', props.BASE_NAME: 'demo', props.MEMORY_MB: '2048',
              props.VCPUS: '2', props.MIN_DISK: 10}
NEED = flavors.needs(DISK_IMAGE)


def test_needs_reads_the_base_disk_image_properties():
    assert NEED == flavors.Needs('demo', 2048, 2, 10)


def test_needs_without_memory_or_vcpus_asks_for_a_flavor():
    with pytest.raises(exceptions.CommandError, match='does not record its RAM and vCPUs.*give --flavor'):
        flavors.needs({'id': 'img-1', 'name': 'old', props.MEMORY_MB: '2048'})


def test_choose_takes_the_smallest_exact_fit():
    choice = flavors.choose([
        flavor('big', 'm.big', 2048, 2, 40),
        flavor('ram', 'm.ram', 4096, 2, 10),          # more RAM: the driver refuses it
        flavor('cpu', 'm.cpu', 2048, 4, 10),          # more vCPUs: refused too
        flavor('small', 'm.small', 2048, 2, 20),
        flavor('tiny', 'm.tiny', 2048, 2, 5),         # root disk under min_disk
        flavor('zero', 'm.zero', 2048, 2, 0),         # zero disk: admin-only by default
        flavor('off', 'm.off', 2048, 2, 10, disabled=True),
    ], NEED)
    assert choice['id'] == 'small'


def test_choose_puts_flavors_with_extra_disks_last():
    assert flavors.choose([flavor('swap', 'a', 2048, 2, 10, swap=512),
                           flavor('plain', 'b', 2048, 2, 80)], NEED)['id'] == 'plain'
    assert flavors.choose([flavor('swap', 'a', 2048, 2, 10, swap=512)], NEED)['id'] == 'swap'


def test_choose_without_a_fit_names_what_is_needed():
    with pytest.raises(exceptions.CommandError) as caught:
        flavors.choose([flavor('1', 'm1.small', 2048, 1, 20)], NEED)
    assert str(caught.value) == ('no flavor available to you has 2048 MB RAM, 2 vCPUs and a root disk '
                                 'of at least 10 GB, which base demo needs: give --flavor, or ask for '
                                 'such a flavor')


def test_check_refuses_a_named_flavor_the_driver_would_refuse():
    with pytest.raises(exceptions.CommandError,
                       match='^flavor m1.small has 2048 MB / 1 vCPUs; base demo needs 2048 MB / 2 vCPUs$'):
        flavors.check(flavor('1', 'm1.small', 2048, 1, 20), NEED)
    with pytest.raises(exceptions.CommandError, match='5 GB root disk; base demo needs at least 10 GB'):
        flavors.check(flavor('1', 'm1.tiny', 2048, 2, 5), NEED)
    zero = flavor('0', 'm1.zero', 2048, 2, 0)
    assert flavors.check(zero, NEED) is zero


class FakeFlavorClient:
    def __init__(self, flavors_list):
        self.flavors = flavors_list

    def list_flavors(self):
        return list(self.flavors)

    def find_flavor(self, ref):
        return next(f for f in self.flavors if ref in (f['id'], f['name']))


def test_select_checks_a_named_flavor_only_when_the_base_records_its_needs():
    client = FakeFlavorClient([flavor('1', 'm1.small', 4096, 1, 20), flavor('2', 'c1', 2048, 2, 10)])
    assert flavors.select(client, None, DISK_IMAGE)['id'] == '2'
    with pytest.raises(exceptions.CommandError, match='has 4096 MB / 1 vCPUs'):
        flavors.select(client, 'm1.small', DISK_IMAGE)
    legacy = {'id': 'img-2', 'name': 'legacy'}
    assert flavors.select(client, 'm1.small', legacy)['id'] == '1'
