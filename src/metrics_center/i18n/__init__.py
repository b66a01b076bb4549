"""Languages: the messages people read in English (the default) or 简体中文 (``zh-CN``).

gettext catalogues (``locale/<lang>/LC_MESSAGES/messages.po``, maintained with Babel: ``make messages``),
read once when first needed; the locale of a message is chosen at the boundary (a recipient's ``locale:``
in ``_teams.yaml``, a signed-in person's, the browser's ``Accept-Language``) and set for the code that
renders it with :func:`~metrics_center.i18n.translate.using`.

May import nothing of ours but ``settings`` and ``errors``.
"""
