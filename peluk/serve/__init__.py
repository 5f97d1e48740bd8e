"""peluk's services (the ``serve`` extra): the hub (``peluk.serve.hub``) and, later, the inference API.

The library never imports this package; services import the library.
"""
