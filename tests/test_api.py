"""The public API is what actorcluster/__init__.py exports, pinned so a change is deliberate."""

import actorcluster


def test_public_names_are_pinned():
    assert sorted(actorcluster.__all__) == sorted([
        "Actor", "ActorClusterError", "ActorCrashed", "ActorError", "ActorNotFound", "ActorRef",
        "AskTimeout", "Client", "ClusterError", "ClusterExists", "ClusterNotFound", "ConfigError",
        "MailboxFull", "RemoteError", "Request", "Response", "TargetImportError", "__version__",
        "ask", "ask_all", "ask_sync", "broadcast", "connect", "lookup", "tell",
        # supervision trees
        "ActorSpec", "Pool", "Supervisor", "count_children", "delete_child", "restart_child",
        "start_child", "terminate_child", "which_children",
    ])
    for name in actorcluster.__all__:
        assert hasattr(actorcluster, name), name


def test_every_actor_error_is_an_actorcluster_error():
    for name in ("ActorNotFound", "AskTimeout", "ActorCrashed", "RemoteError", "MailboxFull"):
        error = getattr(actorcluster, name)
        assert issubclass(error, actorcluster.ActorError)
        assert issubclass(error, actorcluster.ActorClusterError)


def test_using_the_api_outside_a_cluster_says_why():
    import pytest

    with pytest.raises(actorcluster.ActorError, match="no cluster here"):
        actorcluster.tell("counter", 1)


def test_a_reference_is_to_a_name():
    """lookup(5) made ActorRef(5), and its first tell said "a target is ... not a ActorRef"."""
    import pytest

    assert actorcluster.lookup("web/2#1").base_name == "web/2"
    for wrong in (5, None, b"counter"):
        with pytest.raises(TypeError, match="an actor's name is a str"):
            actorcluster.lookup(wrong)


def test_a_bare_import_loads_nothing_yet_and_still_gives_the_api_modules():
    # The public names load on first use (PEP 562). Before that, `import actorcluster` made
    # actorcluster.errors, .http, ... attributes as a side effect: code that reads them after a
    # bare import (actorcluster.errors.AskTimeout) must keep working.
    import subprocess
    import sys

    code = """
import sys
import actorcluster
assert "actorcluster.actor" not in sys.modules and "actorcluster.http" not in sys.modules
assert actorcluster.errors.AskTimeout is actorcluster.AskTimeout
assert actorcluster.http.Request is actorcluster.Request
for module in ("actor", "client", "dynamic", "specs"):
    assert getattr(actorcluster, module).__name__ == "actorcluster." + module
assert not hasattr(actorcluster, "primary") and not hasattr(actorcluster, "nosuch")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
