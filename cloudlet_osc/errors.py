"""One boundary where every expected failure becomes a one-line CommandError.

OSC prints a CommandError's message and exits 1 (tracebacks only with
--debug). The messages come from where the problem is known: nova's fault
text (osc-lib ClientException, from cloudlet_osc.client), the Glance model
and the engine (CloudletError, which cloudlet_glance's errors join),
keystoneauth (unreachable endpoint, no such service in the catalog), and
local files.
"""

import functools

from keystoneauth1 import exceptions as ksa_exceptions
from osc_lib import exceptions

from cloudlet_engine import errors as engine_errors


def one_line_errors(take_action):
    """Decorate a command's take_action."""
    @functools.wraps(take_action)
    def wrapper(self, parsed_args):
        try:
            return take_action(self, parsed_args)
        except exceptions.CommandError:
            raise
        except OSError as exc:
            where = '%s: ' % exc.filename if exc.filename else ''
            raise exceptions.CommandError(where + (exc.strerror or str(exc))) from exc
        except (exceptions.ClientException, engine_errors.CloudletError,
                ksa_exceptions.ClientException) as exc:
            raise exceptions.CommandError(str(exc) or exc.__class__.__name__) from exc
    return wrapper
