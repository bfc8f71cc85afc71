"""``hpclaunch prefetch``: weights into a cluster's shared cache, for offline nodes."""

from __future__ import annotations

import click

from hpclaunch.cli.main import cli


@cli.command()
@click.argument("model")
@click.option("--cluster", "-c", default=None, help="Cluster profile (default: the default one).")
def prefetch(model: str, cluster: str | None) -> None:
    """Download MODEL's weights into the cluster's Hugging Face cache (its hf-home).

    Runs huggingface_hub's snapshot_download here for a local cluster, or on the login
    node over SSH for a remote one, so that jobs on compute nodes without internet
    (offline: true) find the weights. A gated model needs HF_TOKEN.

    \b
      hpclaunch prefetch Qwen/Qwen3-8B --cluster polaris
    """
    from hpclaunch.config import get_cluster
    from hpclaunch.endpoints.prefetch import cache_dir, in_cache, is_hub_id, prefetch
    from hpclaunch.errors import UserError
    from hpclaunch.planning.catalog import resolve_model_id
    from hpclaunch.remote.connect import transport_for

    profile = get_cluster(cluster)
    model_id = resolve_model_id(model)
    if not is_hub_id(model_id):
        raise UserError(f"{model_id} is a local path, not a Hub id: nothing to fetch")
    transport = transport_for(profile)
    try:
        path = prefetch(model_id, profile, transport)
        if not in_cache(model_id, profile, transport):
            raise UserError(f"{model_id} was downloaded to {path}, but {cache_dir(profile)} "
                            "does not list it: check hf-home in the cluster profile")
    finally:
        transport.close()
    click.echo(f"{model_id} is in {cache_dir(profile)} ({path})")
