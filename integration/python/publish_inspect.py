#!/usr/bin/env python3
"""Publish a guestkit.inspect job and print its result: how another service calls us.

    python3 publish_inspect.py --image /var/lib/guestkit/images/web-01.qcow2 \
        [--url amqp://guest:guest@127.0.0.1:5672/%2f] [--pool default] [--format json] [--timeout 300]

The job goes to exchange ``guestkit.jobs`` with routing key ``<pool>``, persistent, with
``reply_to`` naming a private queue and ``correlation_id`` set; the worker publishes the
result there (and to ``guestkit.results``). Exit status 0 only for a ``completed`` result.
"""

import argparse
import datetime
import json
import sys
import time
import uuid

import pika


def build_job(image_path, image_format, output_format):
    job_id = "job-" + uuid.uuid4().hex
    return {
        "version": "1.0",
        "job_id": job_id,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "kind": "VMOperation",
        "operation": "guestkit.inspect",
        "payload": {
            "type": "guestkit.inspect.v1",
            "data": {
                "image": {"path": image_path, **({"format": image_format} if image_format else {})},
                "options": {"include_applications": True, "include_users": True},
                "output": {"format": output_format},
            },
        },
        "execution": {"max_attempts": 1, "timeout_seconds": 600},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    ap.add_argument("--pool", default="default")
    ap.add_argument("--image", required=True)
    ap.add_argument("--image-format")
    ap.add_argument("--format", default="json", choices=["json", "yaml", "text", "markdown", "html"])
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()

    conn = pika.BlockingConnection(pika.URLParameters(args.url))
    ch = conn.channel()
    ch.confirm_delivery()  # basic_publish raises if the broker does not confirm
    reply_queue = ch.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue

    job = build_job(args.image, args.image_format, args.format)
    correlation_id = job["job_id"]
    ch.basic_publish(
        exchange="guestkit.jobs",
        routing_key=args.pool,
        body=json.dumps(job).encode(),
        properties=pika.BasicProperties(
            delivery_mode=2,
            content_type="application/json",
            message_id=job["job_id"],
            correlation_id=correlation_id,
            reply_to=reply_queue,
        ),
        mandatory=True,
    )
    print(f"submitted {job['job_id']} to pool {args.pool}", file=sys.stderr)

    deadline = time.monotonic() + args.timeout
    for method, props, body in ch.consume(reply_queue, auto_ack=True, inactivity_timeout=1):
        if method is None:
            if time.monotonic() > deadline:
                print(f"no result within {args.timeout}s", file=sys.stderr)
                return 2
            continue
        if props.correlation_id != correlation_id:
            continue
        status = (props.headers or {}).get("x-guestkit-status")
        print(f"status={status} content_type={props.content_type}", file=sys.stderr)
        sys.stdout.write(body.decode("utf-8", "replace"))
        sys.stdout.write("\n")
        ch.cancel()
        conn.close()
        return 0 if status == "completed" else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
