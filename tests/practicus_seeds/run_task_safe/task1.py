import taskyard as prt


def main():
    prt.logger.info("Running task 1 is completed")


if __name__ == "__main__":
    main()

