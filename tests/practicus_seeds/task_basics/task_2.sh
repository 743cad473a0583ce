echo "Hello from simple task 2"
