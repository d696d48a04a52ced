"""Schemathesis hooks for the positive, stateful pass of .ci/fuzz-http: orders name SKUs the demo
catalog of `stampede serve` sells (no schema can know a shop's catalog), so generated orders are
accepted and the stateful phase follows them to get, pay and cancel. Only that pass loads this
file: a negative pass must keep the invalid SKUs it generates."""

import schemathesis

# `stampede serve --catalog demo` (server/src/serve.rs, StackConfig::demo).
DEMO_SKUS = ["tshirt-black", "mug", "poster", "sneaker-limited"]


@schemathesis.hook("map_body").apply_to(path="/v1/orders", method="POST")
def orders_from_the_catalog(ctx, body):
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        body["items"] = [item for item in body["items"] if isinstance(item, dict)][: len(DEMO_SKUS)]
        for n, item in enumerate(body["items"]):
            item["sku"] = DEMO_SKUS[n]
            # Within every demo product's most per order (2 for the sneaker).
            item["qty"] = 1 + int(item.get("qty", 1)) % 2
    return body


@schemathesis.hook("map_body").apply_to(path="/admin/restock", method="POST")
def restock_from_the_catalog(ctx, body):
    if isinstance(body, dict):
        body["sku"] = DEMO_SKUS[len(str(body.get("sku", ""))) % len(DEMO_SKUS)]
    return body
