"""The hello world of the Node.js cluster article, served by a cluster of Python workers.

    actorcluster run examples.hello:handler
    curl http://127.0.0.1:8000/
"""


async def handler(request):
    return "hello world\n"
