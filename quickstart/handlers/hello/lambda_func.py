def handler(event):
    return "Hello, %s!" % event.get("name", "World")
