from dann.analyze import main

main()
