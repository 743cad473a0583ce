print("Hello from simple task 1")
