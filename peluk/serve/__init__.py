"""peluk's services (the ``serve`` extra): the hub (``peluk.serve.hub``), the inference API
(``peluk.serve.api``) and the one app that serves both (``peluk.serve.app``, ``peluk serve``).

The library never imports this package; services import the library.
"""
