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
