from dann.report import main

main()
