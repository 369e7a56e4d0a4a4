"""``orderwatch console``: the web console for the people who handle exceptions.

A server-rendered aiohttp application (``app``) over its own SQLite projection of the topics
(``store``, filled by ``projector``), with sign-in and roles (``auth``) and English/Chinese labels
(``i18n``). See docs/console.md.
"""
